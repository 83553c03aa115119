{#- Months pooled into quarters, then years, until a share can be published.

    A small town's monthly follow-up counts are almost all under k and suppressed, so a page of
    months says nothing. For each series (a rule's steps due and in time, or one
    organisation's), each quarter is shown month by month when every month of it so far is
    published, else as the quarter when that can be published; a year with a quarter that can
    be neither is shown as one period when it can be, else as the months and quarters that
    could be. A pooled figure is published only when

    - its own counts could be published (due 0, or due, in time and late all 0 or at least k),
      and
    - subtracting every figure already published for its months (the monthly tables) from it
      leaves 0 or at least k for due, in time and late alike: a pooled period never reveals
      the month it pooled.

    Periods that contain the as-of month are partial: steps falling due later in the month have
    not had their chance yet. Periods in which no step fell due are left out. A year whose steps
    due can be shown but whose steps in time (or late) are fewer than k shows the bound that
    suppression already implies ("under 8%"), never the count.

    `facts`: keys, month ('YYYY-MM'), due, in_time: every month, unsuppressed.
    `public`: keys, month, due, in_time as a reader already knows them (null where suppressed
    and not derivable). Returns keys, period, grain (month | quarter | year), period_start,
    period_end, steps_due, steps_in_time, share_in_time, share_bound, partial. -#}
{% macro pooled_periods(facts, public, keys) -%}
{%- set kc = keys | join(', ') -%}
with k as (
    {{ min_published_count() }}
),

now_month as (
    select cast({{ dbt.date_trunc('month', as_of_date()) }} as date) as now
),

series as (
    select {{ kc }}, cast(month || '-01' as date) as month,
           sum(due) as due, sum(in_time) as in_time
    from {{ facts }}
    group by {{ kc }}, month
),

known as (
    select {{ kc }}, cast(month || '-01' as date) as month, due as known_due,
           in_time as known_in
    from {{ public }}
    where due is not null or in_time is not null
),

months as (
    select
        s.*,
        coalesce(n.known_due, 0) as known_due,
        coalesce(n.known_in, 0) as known_in,
        coalesce(n.known_due is not null and n.known_in is not null, false) as both_known,
        cast({{ dbt.date_trunc('quarter', 's.month') }} as date) as q_start,
        cast(extract(year from s.month) as {{ dbt.type_int() }}) as yr
    from series as s
    left join known as n on {{ same_keys(keys, 'n', 's') }} and n.month = s.month
),

quarters as (
    select
        {{ kc }}, yr, q_start,
        min(month) as start_month,
        max(month) as last_month,
        sum(due) as due,
        sum(in_time) as in_time,
        sum(known_due) as known_due,
        sum(known_in) as known_in,
        sum(case when both_known then 1 else 0 end) as months_known
    from months
    group by {{ kc }}, yr, q_start
),

quarter_calls as (
    select
        q.*,
        -- every month of the quarter so far (to the as-of month) is published
        q.months_known = least(
            3, {{ dbt.datediff('q.q_start', 'greatest(n.now, q.last_month)', 'month') }} + 1
        ) as by_month,
        (
            {{ publishable('q.due', 'q.in_time', 'k.k') }}
            and {{ leaves_nothing_small('q.due - q.known_due', 'q.in_time - q.known_in', 'k.k') }}
        ) as poolable
    from quarters as q
    cross join now_month as n
    cross join k
),

years as (
    select
        {{ kc }}, yr,
        min(start_month) as start_month,
        sum(due) as due,
        sum(in_time) as in_time,
        sum(known_due) as known_due,
        sum(known_in) as known_in,
        max(case when not by_month and not poolable then 1 else 0 end) as uncovered
    from quarter_calls
    group by {{ kc }}, yr
),

year_calls as (
    select
        y.*,
        case
            when y.uncovered = 0 then 'parts'
            when y.due > 0 and {{ publishable('y.due', 'y.in_time', 'k.k') }}
                and {{ leaves_nothing_small('y.due - y.known_due', 'y.in_time - y.known_in', 'k.k') }}
                then 'year'
            -- the steps due can be shown and only one of in time or late is small: the share
            -- is shown as the bound that suppression already implies
            when y.due >= k.k and not {{ small('y.due - y.known_due', 'k.k') }}
                and ((y.in_time < k.k) <> (y.due - y.in_time < k.k))
                then 'bounded'
            else 'parts'
        end as shown_as
    from years as y
    cross join k
),

periods as (
    select
        m.{{ keys | join(', m.') }},
        {{ month_label('m.month') }} as period,
        'month' as grain,
        m.month as period_start,
        m.month as period_end,
        m.due, m.in_time,
        false as bounded
    from months as m
    inner join quarter_calls as q on {{ same_keys(keys, 'q', 'm') }} and q.q_start = m.q_start
    inner join year_calls as y on {{ same_keys(keys, 'y', 'm') }} and y.yr = m.yr
    where q.by_month and y.shown_as = 'parts'
    union all
    select
        q.{{ keys | join(', q.') }},
        cast(q.yr as {{ dbt.type_string() }}) || '-Q'
            || cast(extract(quarter from q.q_start) as {{ dbt.type_string() }}),
        'quarter',
        q.start_month,
        cast({{ dbt.dateadd('month', 2, 'q.q_start') }} as date),
        q.due, q.in_time,
        false
    from quarter_calls as q
    inner join year_calls as y on {{ same_keys(keys, 'y', 'q') }} and y.yr = q.yr
    where not q.by_month and q.poolable and y.shown_as = 'parts'
    union all
    select
        y.{{ keys | join(', y.') }},
        cast(y.yr as {{ dbt.type_string() }}),
        'year',
        y.start_month,
        cast(cast(y.yr as {{ dbt.type_string() }}) || '-12-01' as date),
        y.due, y.in_time,
        y.shown_as = 'bounded'
    from year_calls as y
    where y.shown_as in ('year', 'bounded')
)

select
    p.{{ keys | join(', p.') }},
    p.period,
    p.grain,
    p.period_start,
    p.period_end,
    cast(p.due as {{ dbt.type_bigint() }}) as steps_due,
    cast(case when p.bounded then null else p.in_time end as {{ dbt.type_bigint() }})
        as steps_in_time,
    case
        when p.bounded or p.due = 0 then null
        else {{ round_half_even('cast(p.in_time as double) / p.due', 3) }}
    end as share_in_time,
    case
        when not p.bounded then null
        when p.in_time < k.k
            then 'under ' || cast(cast(ceil(cast(100 * k.k as double) / p.due)
                                       as {{ dbt.type_bigint() }}) as {{ dbt.type_string() }}) || '%'
        else 'over ' || cast(cast(floor(100 * (1 - cast(k.k as double) / p.due))
                                  as {{ dbt.type_bigint() }}) as {{ dbt.type_string() }}) || '%'
    end as share_bound,
    p.period_end >= n.now as partial
from periods as p
cross join k
cross join now_month as n
where p.due > 0
{%- endmacro %}


{#- A pooled figure's own counts could be published: due 0, or due, in time and late all 0 or
    at least k. -#}
{% macro publishable(due, in_time, k) -%}
({{ due }} = 0 or not ({{ small(due, k) }} or {{ small(in_time, k) }}
                       or {{ small('(' ~ due ~ ') - (' ~ in_time ~ ')', k) }}))
{%- endmacro %}


{#- What is left after subtracting what a reader already knows is 0 or at least k, for due,
    in time and late alike. -#}
{% macro leaves_nothing_small(rest_due, rest_in, k) -%}
(not ({{ small('(' ~ rest_due ~ ')', k) }} or {{ small('(' ~ rest_in ~ ')', k) }}
      or {{ small('(' ~ rest_due ~ ') - (' ~ rest_in ~ ')', k) }}))
{%- endmacro %}


{#- a.key = b.key for every key column. -#}
{% macro same_keys(keys, a, b) -%}
    {%- for c in keys %}{{ a }}.{{ c }} = {{ b }}.{{ c }}{% if not loop.last %} and {% endif %}{% endfor -%}
{%- endmacro %}


{#- A month's city figure of a column is known to a reader of a monthly table when its ALL row
    is published, or every other row of the month is (they add up to it). A month with no row
    at all is known: nothing fell due, and the reader can tell. -#}
{% macro known_months(table, dim, columns) -%}
    select
        month
        {%- for col in columns %},
        (
            coalesce(min(case when {{ dim }} = 'ALL'
                              then case when {{ col }} is null then 0 else 1 end end), 0) = 1
            or coalesce(min(case when {{ dim }} <> 'ALL'
                                 then case when {{ col }} is null then 0 else 1 end end), 1) = 1
        ) as known_{{ col }}
        {%- endfor %}
    from {{ table }}
    group by month
{%- endmacro %}
