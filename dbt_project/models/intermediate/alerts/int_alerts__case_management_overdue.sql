-- One row per confirmed EBLL of a child: an episode of rule 3 of lead-followup.md. Its step is
-- a qualifying service with a qualifying outcome on or after the confirmation; became_alert
-- says whether it went past the band's window without one.
with confirmations as (
    select * from {{ ref('int_lead_confirmations') }}
),

steps as (
    select * from {{ ref('qualifying_steps') }} where rule_code = 'CASE_MANAGEMENT_OVERDUE'
),

-- each service in its latest version as known on the as-of date: a service later corrected
-- to DECLINED no longer counts as the step taken
services as (
    select s.person_id, s.service_date
    from {{ ref('int_provider_services') }} as s
    where s.service_code in (select code from steps where code_type = 'service_code')
      and s.outcome_code in (select code from steps where code_type = 'outcome_code')
),

windows as (
    select * from {{ ref('int_rule_windows') }} where rule_code = 'CASE_MANAGEMENT_OVERDUE'
),

episodes as (
    select
        {{ confirmation_episode_columns() }}
        (
            select min(s.service_date) from services as s
            where s.person_id = c.person_id and s.service_date >= c.confirmation_date
        ) as step_date
    from confirmations as c
    inner join windows as w on w.band = c.band
)

select
    'CASE_MANAGEMENT_OVERDUE' as rule_code,
    *,
    'Confirmed blood lead ' || result_value || ' µg/dL (' || sample_type_label || ') on '
    || episode_date || '; no case management or home visit has started, and band ' || band
    || ' calls for one within ' || window_days || ' days.' as reason_open,
    'case management started on ' || step_date as reason_step,
    {{ rule_outcome_columns() }}
from episodes
