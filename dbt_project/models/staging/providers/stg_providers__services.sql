with source as (
    select * from {{ source('src', 'provider_services') }}
),

renamed as (
    select
        service_key,
        person_id,
        provider_code,
        contract_id,
        service_code,
        cast(service_date as date) as service_date,
        outcome_code,
        cast(extract_date as date) as extract_date
    from source
)

select * from renamed
