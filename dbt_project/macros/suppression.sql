{#- Small-cell suppression for every published table: no count from 1 to k - 1 can be read or
    worked out (k = min_published_count in lead_parameters).

    - Primary: a count from 1 to k - 1 is suppressed (0 is published: it discloses nobody).
    - Pairs: for a (due, in_time) pair, the implied count due - in_time (late) must not be 1 to
      k - 1 either; when it is, in_time is suppressed, so late cannot be worked out.
    - Complementary: within a group (a month), the cells of a measure add up to the published
      total; if exactly one cell is suppressed, it could be worked out from the total, so the
      smallest other non-zero cell is suppressed too (the first by cell name among equals), or,
      failing one, the total.
    - Shares are published only where both their counts are, rounded half to even.

    `source`: one row per group and cell, with the measures. Returns a select of the group keys,
    the cell (as text; 'ALL' for each group's total when `totals`), the measures (null where
    suppressed) and a share_<in_time> per pair, ordered by group and cell. The judge of this
    macro is pipelines/suppression.py (disclosed_small_cells) and the tests' differencing audit. -#}
{% macro suppressed_cells(source, group_keys, cell, measures, pairs, totals=true) -%}
{%- set gk = group_keys | join(', ') -%}
{%- set late_of = {} -%}
{%- for due, in_time in pairs -%}
    {%- do late_of.setdefault(in_time, []).append(due) -%}
{%- endfor -%}
with k as (
    {{ min_published_count() }}
),

cells as (
    select
        {{ gk }},
        cast({{ cell }} as {{ dbt.type_string() }}) as {{ cell }},
        false as is_total
        {%- for m in measures %},
        cast(coalesce({{ m }}, 0) as {{ dbt.type_bigint() }}) as {{ m }}
        {%- endfor %}
    from {{ source }}
    {%- if totals %}
    union all
    select
        {{ gk }},
        'ALL',
        true
        {%- for m in measures %},
        cast(sum(coalesce({{ m }}, 0)) as {{ dbt.type_bigint() }})
        {%- endfor %}
    from {{ source }}
    group by {{ gk }}
    {%- endif %}
),

primary_hidden as (
    select
        c.*
        {%- for m in measures %},
        (
            {{ small(m, 'k.k') }}
            {%- for due in late_of.get(m, []) %}
            or {{ small('(' ~ due ~ ' - ' ~ m ~ ')', 'k.k') }}
            {%- endfor %}
        ) as h0_{{ m }}
        {%- endfor %}
    from cells as c
    cross join k
),

{%- if totals %}

complement as (
    select
        p.*
        {%- for m in measures %},
        sum(case when not is_total and h0_{{ m }} then 1 else 0 end)
            over (partition by {{ gk }}) as n_hidden_{{ m }},
        max(case when is_total and h0_{{ m }} then 1 else 0 end)
            over (partition by {{ gk }}) as total_hidden_{{ m }},
        sum(case when not is_total and not h0_{{ m }} and {{ m }} > 0 then 1 else 0 end)
            over (partition by {{ gk }}) as n_candidates_{{ m }},
        row_number() over (
            partition by {{ gk }}
            order by
                case when not is_total and not h0_{{ m }} and {{ m }} > 0 then 0 else 1 end,
                {{ m }},
                {{ cell }}
        ) as candidate_rank_{{ m }}
        {%- endfor %}
    from primary_hidden as p
),

hidden as (
    select
        c.*
        {%- for m in measures %},
        (
            h0_{{ m }}
            or (
                n_hidden_{{ m }} = 1 and total_hidden_{{ m }} = 0
                and (
                    (not is_total and not h0_{{ m }} and {{ m }} > 0
                     and candidate_rank_{{ m }} = 1)
                    or (is_total and n_candidates_{{ m }} = 0)
                )
            )
        ) as h_{{ m }}
        {%- endfor %}
    from complement as c
)
{%- else %}

hidden as (
    select
        p.*
        {%- for m in measures %},
        h0_{{ m }} as h_{{ m }}
        {%- endfor %}
    from primary_hidden as p
)
{%- endif %}

select
    {{ gk }},
    {{ cell }}
    {%- for m in measures %},
    case when h_{{ m }} then null else {{ m }} end as {{ m }}
    {%- endfor %}
    {%- for due, in_time in pairs %},
    case
        when h_{{ due }} or h_{{ in_time }} then null
        else {{ round_half_even('cast(' ~ in_time ~ ' as double) / nullif(' ~ due ~ ', 0)', 3) }}
    end as share_{{ in_time }}
    {%- endfor %}
from hidden
{%- endmacro %}


{#- A count from 1 to k - 1: one that would single out somebody. -#}
{% macro small(expr, k) -%}
({{ expr }} >= 1 and {{ expr }} < {{ k }})
{%- endmacro %}


{#- One row, one column `k`: the smallest count published (lead_parameters). -#}
{% macro min_published_count() -%}
    select cast(value as {{ dbt.type_bigint() }}) as k
    from {{ ref('lead_parameters') }}
    where parameter = 'min_published_count'
{%- endmacro %}


{#- Round half to even (correctly rounded), the same on every engine. -#}
{% macro round_half_even(expr, digits) -%}
    {{ return(adapter.dispatch('round_half_even')(expr, digits)) }}
{%- endmacro %}

{% macro default__round_half_even(expr, digits) -%}
round({{ expr }}, {{ digits }})
{%- endmacro %}

{% macro duckdb__round_half_even(expr, digits) -%}
round_even({{ expr }}, {{ digits }})
{%- endmacro %}

{% macro spark__round_half_even(expr, digits) -%}
bround({{ expr }}, {{ digits }})
{%- endmacro %}


{#- 'YYYY-MM' of a date. -#}
{% macro month_label(expr) -%}
    {{ return(adapter.dispatch('month_label')(expr)) }}
{%- endmacro %}

{% macro default__month_label(expr) -%}
strftime({{ expr }}, '%Y-%m')
{%- endmacro %}

{% macro spark__month_label(expr) -%}
date_format({{ expr }}, 'yyyy-MM')
{%- endmacro %}
