with source as (
    select * from {{ source('src', 'provider_contracts') }}
),

renamed as (
    select
        contract_id,
        provider_code,
        provider_name,
        split(service_codes, ';') as service_codes,
        cast(start_date as date) as start_date,
        cast(end_date as date) as end_date,
        amount_usd,
        target_description,
        cast(extract_date as date) as extract_date
    from source
)

select * from renamed
