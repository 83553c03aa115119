-- One row per alert: a child, a rule and an episode (the screening or confirming test it
-- started from). OPEN while the step is missing past its due date; CLOSED when the step
-- arrived late. alert_id is stable for the same child, rule and episode.
with unioned as (
    select * from {{ ref('int_alerts__confirmatory_test_overdue') }}
    union all by name
    select * from {{ ref('int_alerts__environmental_investigation_overdue') }}
    union all by name
    select * from {{ ref('int_alerts__case_management_overdue') }}
),

rules as (
    select * from {{ ref('alert_rules') }}
)

select
    substr(md5(u.person_id || '|' || u.rule_code || '|' || cast(u.episode_date as varchar)), 1, 16)
        as alert_id,
    u.person_id,
    u.rule_code,
    r.assigned_agency,
    u.band,
    u.due_date,
    case
        when u.step_date is null then date_diff('day', u.due_date, {{ as_of_date() }})
        else date_diff('day', u.due_date, u.step_date)
    end as days_overdue,
    case when u.step_date is null then 'OPEN' else 'CLOSED' end as status,
    case when u.step_date is null then u.reason_open
        else u.reason_open || ' ' || u.reason_closed end as reason,
    r.next_step,
    -- evidence for the agency's list (pseudonymous; the outbox re-identifies from the vault)
    u.episode_date,
    u.step_date,
    u.window_days,
    u.evidence_test_key,
    u.address_key,
    u.result_value,
    {{ as_of_date() }} as as_of_date
from unioned as u
inner join rules as r on r.rule_code = u.rule_code
