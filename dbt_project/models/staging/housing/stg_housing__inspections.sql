with source as (
    select * from {{ source('src', 'housing_inspections') }}
),

renamed as (
    select
        inspection_key,
        address_key,
        building_key,
        zip5,
        cast(inspection_date as date) as inspection_date,
        inspection_type,
        "trigger" as inspection_trigger,
        lead_hazard_found,
        cast(order_issued_date as date) as order_issued_date,
        cast(clearance_date as date) as clearance_date,
        cast(extract_date as date) as extract_date
    from source
)

select * from renamed
