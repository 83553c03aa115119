with source as (
    select * from {{ source('src', 'persons') }}
),

renamed as (
    select
        person_id,
        coalesce(sex, 'U') as sex
    from source
)

select * from renamed
