-- One row per confirmed elevated blood lead level (EBLL) of a child: a venous elevated test,
-- or a second screening-elevated test within the confirmation window after an earlier one.
-- Its confirmation date, band and dwelling are those of the confirming test; the next
-- confirmation of the same child supersedes it (the rules act on the latest).
with elevated as (
    select * from {{ ref('int_lead_tests_classified') }}
    where is_child and is_elevated
),

venous as (
    select *, 'venous test' as confirmed_by
    from elevated
    where sample_type = 'V'
),

second_screen as (
    {% call keep_first('test_key', 'earlier_sample_date') %}
    select later.*, 'second screening test' as confirmed_by,
        earlier.sample_date as earlier_sample_date
    from elevated as later
    inner join elevated as earlier
        on earlier.person_id = later.person_id
        and earlier.test_key <> later.test_key
        and earlier.is_screening
        and later.is_screening
        and later.sample_date > earlier.sample_date
        and later.sample_date <= earlier.sample_date
            + cast({{ lead_parameter('second_screen_confirm_days') }} as integer)
    {% endcall %}
),

unioned as (
    select
        person_id,
        test_key as confirming_test_key,
        test_uid as confirming_test_uid,
        sample_date as confirmation_date,
        band,
        result_value,
        sample_type_label,
        address_key,
        building_key,
        zip5,
        confirmed_by
    from venous
    union all
    select
        person_id, test_key, test_uid, sample_date, band, result_value, sample_type_label, address_key,
        building_key, zip5, confirmed_by
    from second_screen
)

select
    *,
    -- the rules act on the latest confirmation: the next one supersedes this episode
    lead(confirmation_date) over (
        partition by person_id order by confirmation_date, result_value, confirming_test_key
    ) as next_confirmation_date
from unioned
