with source as (
    select * from {{ source('src', 'housing_residents') }}
),

renamed as (
    select
        person_id,
        household_key,
        relationship,
        address_key,
        building_key,
        zip5,
        cast(move_out_date as date) as move_out_date,
        cast(snapshot_date as date) as snapshot_date
    from source
)

select * from renamed
