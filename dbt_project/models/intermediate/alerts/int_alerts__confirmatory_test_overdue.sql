-- One row per screening-elevated test of a child: an episode of rule 1 of lead-followup.md. Its
-- step is any venous test on or after it; became_alert says whether it went past the band's
-- window without one. The rule acts on the child's latest such test, so each row carries the
-- next one (superseded_on): an older episode only became an alert if it was overdue first.
with classified as (
    select * from {{ ref('int_lead_tests_classified') }}
),

screens as (
    select
        *,
        lead(sample_date) over (
            partition by person_id order by sample_date, result_value, test_key
        ) as next_screen_date
    from classified
    where is_child and is_elevated and is_screening
),

venous as (
    select person_id, sample_date from classified where sample_type = 'V'
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
        w.rule_version,
        s.sample_date + w.window_days as due_date,
        s.test_key as evidence_test_key,
        s.test_uid as evidence_test_uid,
        s.address_key,
        s.zip5,
        s.result_value,
        s.sample_type_label,
        s.next_screen_date as superseded_on,
        (
            select min(v.sample_date) from venous as v
            where v.person_id = s.person_id and v.sample_date >= s.sample_date
        ) as step_date
    from screens as s
    inner join windows as w on w.band = s.band
)

select
    'CONFIRMATORY_TEST_OVERDUE' as rule_code,
    *,
    'Screening blood lead ' || result_value || ' µg/dL (' || sample_type_label || ') on '
    || episode_date || ' has had no venous confirmation; band ' || band
    || ' calls for one within ' || window_days || ' days.' as reason_open,
    'a venous test was recorded on ' || step_date as reason_step,
    {{ rule_outcome_columns() }}
from episodes
