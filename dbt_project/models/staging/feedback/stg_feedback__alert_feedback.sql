with source as (
    select * from {{ source('src', 'alert_feedback') }}
),

renamed as (
    select
        alert_id,
        agency,
        status as feedback_status,
        recorded_at,
        cast(recorded_at as date) as recorded_date,
        cast(extract_date as date) as extract_date
    from source
)

select * from renamed
