-- One row per organisation and month: its follow-up steps that fell due that month (windows
-- that ran their course) and how many it took in time. An organisation is the one that owns
-- such an alert: health, housing, schools, or the provider serving the child (each provider its
-- own; a child no provider serves counts for the organisation the routing seed names). Only
-- the organisation's own work; never compared with another or broken down by worker.
with episodes as (
    {{ followup_episodes() }}
),

serving as (
    select person_id, {{ value_at_max("provider_code", "service_date") }} as provider_code
    from {{ ref('int_provider_services') }}
    group by person_id
),

owned as (
    {% call keep_first('rule_code, person_id, episode_date', 'routed_by_band desc nulls last') %}
    select
        e.*,
        case
            when r.assigned_agency <> 'providers' then r.assigned_agency
            else coalesce(s.provider_code, rt.route_to, 'health')
        end as organisation,
        rt.band = e.band as routed_by_band
    from episodes as e
    inner join {{ ref('alert_rules') }} as r on r.rule_code = e.rule_code
    left join serving as s on s.person_id = e.person_id
    left join {{ ref('alert_routing') }} as rt
        on rt.rule_code = e.rule_code and rt.band in (e.band, '*')
    {% endcall %}
)

select
    organisation as agency,
    {{ month_label("date_trunc('month', due_date)") }} as month,
    count(*) as steps_due,
    count(*) filter (where step_in_time) as steps_in_time
from owned
group by all
