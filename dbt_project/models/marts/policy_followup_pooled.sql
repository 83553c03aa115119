-- One row per enabled rule's follow-up measure and period: steps due, steps taken in time and
-- the share, by month where every month can be published, else pooled into the quarter, else
-- the year (macros/pooling.sql), and never so that a suppressed month can be worked out from
-- the monthly tables. Periods holding the as-of month are marked partial.
{%- set pairs = followup_pairs() %}
{%- set by_zip = ref('policy_lead_followup_by_zip') %}
{%- set by_band = ref('policy_lead_followup_by_band') %}
{%- set facts_by_zip = ref('int_policy_facts_by_zip') %}


with
{%- if pairs %}
zip_known as (
    {{ known_months(by_zip, 'zip5', followup_pair_columns(pairs)) }}
),

band_known as (
    {{ known_months(by_band, 'band', followup_pair_columns(pairs)) }}
),

city as (
    select
        f.month
        {%- for col in followup_pair_columns(pairs) %},
        sum(f.{{ col }}) as {{ col }}
        {%- endfor %}
    from {{ facts_by_zip }} as f
    group by f.month
),

facts as (
    {%- for due, in_time in pairs %}
    select '{{ due[:-4] }}' as measure, month, {{ due }} as due, {{ in_time }} as in_time
    from city
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- endfor %}
),

public as (
    {%- for due, in_time in pairs %}
    select
        '{{ due[:-4] }}' as measure,
        c.month
        {%- for col, alias in [(due, 'due'), (in_time, 'in_time')] %},
        case
            when coalesce(not z.known_{{ col }}, false) and coalesce(not b.known_{{ col }}, false)
                then null
            else c.{{ col }}
        end as {{ alias }}
        {%- endfor %}
    from city as c
    left join zip_known as z on z.month = c.month
    left join band_known as b on b.month = c.month
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- endfor %}
),
{%- else %}
facts as (
    select cast(null as {{ dbt.type_string() }}) as measure,
           cast(null as {{ dbt.type_string() }}) as month,
           cast(null as {{ dbt.type_bigint() }}) as due,
           cast(null as {{ dbt.type_bigint() }}) as in_time
    where 1 = 0
),

public as (
    select * from facts
),
{%- endif %}

pooled as (
    {{ pooled_periods('facts', 'public', ['measure']) }}
)

select
    p.measure,
    r.title as rule_title,
    p.period,
    p.grain,
    p.period_start,
    p.period_end,
    p.steps_due,
    p.steps_in_time,
    p.share_in_time,
    p.share_bound,
    p.partial
from pooled as p
left join {{ ref('alert_rules') }} as r on r.measure = p.measure
order by p.measure, p.period_start
