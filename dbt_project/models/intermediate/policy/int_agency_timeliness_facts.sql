-- One row per agency and month: its follow-up steps that fell due that month (windows that ran
-- their course) and how many it took in time. Only the agency's own work; never compared with
-- another agency or broken down by worker.
with episodes as (
    {{ followup_episodes() }}
)

select
    r.assigned_agency as agency,
    strftime(date_trunc('month', e.due_date), '%Y-%m') as month,
    count(*) as steps_due,
    count(*) filter (where e.step_in_time) as steps_in_time
from episodes as e
inner join {{ ref('alert_rules') }} as r on r.rule_code = e.rule_code
group by all
