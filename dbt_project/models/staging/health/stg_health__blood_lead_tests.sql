with source as (
    select * from {{ source('src', 'health_tests') }}
),

renamed as (
    select
        -- ids
        test_key,
        test_uid,
        person_id,
        -- the test
        cast(sample_date as date) as sample_date,
        sample_type,
        result_value,
        result_censored,
        age_months,
        -- where the child lived (pseudonymous)
        address_key,
        building_key,
        zip5,
        -- when health knew it
        cast(reported_date as date) as reported_date,
        cast(extract_date as date) as extract_date
    from source
)

select * from renamed
