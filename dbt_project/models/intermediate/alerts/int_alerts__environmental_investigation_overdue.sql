-- One row per confirmed EBLL of a child: an episode of rule 2 of lead-followup.md. Its step is
-- a lead risk assessment of the same dwelling (street address and unit, however it was typed),
-- from the look-back before the confirmation on; became_alert says whether it went past the
-- band's window without one.
with confirmations as (
    select * from {{ ref('int_lead_confirmations') }}
),

qualifying as (
    select * from {{ ref('int_lead_risk_assessments') }}
),

windows as (
    select * from {{ ref('int_rule_windows') }}
    where rule_code = 'ENVIRONMENTAL_INVESTIGATION_OVERDUE'
),

episodes as (
    select
        {{ confirmation_episode_columns() }}
        (
            select min(q.inspection_date) from qualifying as q
            where q.address_key = c.address_key
              and q.inspection_date >= c.confirmation_date
                  - cast({{ lead_parameter('investigation_lookback_days') }} as integer)
        ) as step_date
    from confirmations as c
    inner join windows as w on w.band = c.band
)

select
    'ENVIRONMENTAL_INVESTIGATION_OVERDUE' as rule_code,
    *,
    'A child under 6 living here had a confirmed blood lead level of ' || result_value
    || ' µg/dL (' || sample_type_label || ') on ' || episode_date
    || '; no lead risk assessment of this home is recorded, and band ' || band
    || ' calls for one within ' || window_days || ' days.' as reason_open,
    'a lead risk assessment of the home was recorded on ' || step_date as reason_step,
    {{ rule_outcome_columns() }}
from episodes
