-- One row per child whose latest screening-elevated test went without a venous test past the
-- band's window. Rule 1 of lead-followup.md; the step is any venous test on or after it.
with latest_screen as (
    select * from {{ ref('int_lead_tests_classified') }}
    where is_child and is_elevated and is_screening
    qualify row_number() over (
        partition by person_id order by sample_date desc, result_value desc, test_key
    ) = 1
),

venous as (
    select person_id, sample_date from {{ ref('int_lead_tests_classified') }}
    where sample_type = 'V'
),

windows as (
    select * from {{ ref('int_rule_windows') }} where rule_code = 'CONFIRMATORY_TEST_OVERDUE'
),

episodes as (
    select
        s.person_id,
        s.sample_date as episode_date,
        s.band,
        w.window_days,
        s.sample_date + w.window_days as due_date,
        s.test_key as evidence_test_key,
        s.address_key,
        s.result_value,
        s.sample_type_label,
        (
            select min(v.sample_date) from venous as v
            where v.person_id = s.person_id and v.sample_date >= s.sample_date
        ) as step_date
    from latest_screen as s
    inner join windows as w on w.band = s.band
)

select
    'CONFIRMATORY_TEST_OVERDUE' as rule_code,
    *,
    'Screening blood lead ' || result_value || ' µg/dL (' || sample_type_label || ') on '
    || episode_date || ' has had no venous confirmation; band ' || band
    || ' calls for one within ' || window_days || ' days.' as reason_open,
    'A venous test was recorded on ' || step_date || ', after the due date.' as reason_closed
from episodes
where {{ as_of_date() }} > due_date and (step_date is null or step_date > due_date)
