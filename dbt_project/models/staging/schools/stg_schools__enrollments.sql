with source as (
    select * from {{ source('src', 'schools_enrollment') }}
),

renamed as (
    select
        student_key,
        person_id,
        school_code,
        grade_level,
        cast(entry_date as date) as entry_date,
        cast(exit_date as date) as exit_date,
        iep,
        section_504,
        zip5,
        cast(snapshot_date as date) as snapshot_date
    from source
)

select * from renamed
