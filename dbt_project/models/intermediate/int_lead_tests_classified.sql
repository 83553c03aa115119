-- One row per blood lead test as health knew it on the as-of date: the latest report of each
-- test wins, and anything reported or delivered after the as-of date is ignored.
with reported as (
    {% call latest_version('health_tests') %}
    select *
    from {{ ref('stg_health__blood_lead_tests') }}
    where reported_date <= {{ as_of_date() }}
      and extract_date <= {{ as_of_date() }}
      and sample_date <= {{ as_of_date() }}
    {% endcall %}
),

bands as (
    select * from {{ ref('lead_bands') }}
)

select
    t.*,
    -- a test with no known age still counts: the surveillance feed is children's tests
    coalesce(t.age_months < {{ lead_parameter('child_max_age_months') }}, true) as is_child,
    -- a censored value (<x) is never elevated: it is only known to be below x
    (not t.result_censored and t.result_value >= {{ lead_parameter('reference_value') }})
        as is_elevated,
    t.sample_type in ('C', 'U') as is_screening,
    case t.sample_type
        when 'V' then 'venous' when 'C' then 'capillary' else 'sample type unknown'
    end as sample_type_label,
    b.band
from reported as t
left join bands as b
    on not t.result_censored
    and t.result_value >= b.lower_ug_dl
    and (b.upper_ug_dl is null or t.result_value < b.upper_ug_dl)
