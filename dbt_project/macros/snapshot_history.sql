{#- Valid-from / valid-to history from full snapshots (gaps and islands).

    One row per member and unbroken stretch of identical state across consecutive snapshots.
    valid_to is the first snapshot where the state changed or the member was absent (null while
    current); ended_because says which: LEFT (absent) or CHANGED. Only snapshots delivered by
    the as-of date count, so history can be read as of any date. -#}
{% macro snapshot_history(relation, member_key, state_columns) -%}
with snaps as (
    select snapshot_date, lead(snapshot_date) over (order by snapshot_date) as next_snapshot
    from (select distinct snapshot_date from {{ relation }}
          where snapshot_date <= {{ as_of_date() }})
),

observed as (
    select
        r.*,
        s.next_snapshot,
        md5(concat_ws('|', {% for c in state_columns %}coalesce(cast(r.{{ c }} as string), '∅'){% if not loop.last %}, {% endif %}{% endfor %})) as state_hash
    from {{ relation }} as r
    inner join snaps as s on s.snapshot_date = r.snapshot_date
),

marked as (
    select
        *,
        lag(state_hash) over member_window as prev_state,
        lag(next_snapshot) over member_window as prev_next
    from observed
    window member_window as (partition by {{ member_key | join(', ') }} order by snapshot_date)
),

islands as (
    select
        *,
        sum(case when prev_state is null or prev_state <> state_hash
                      or prev_next is distinct from snapshot_date then 1 else 0 end)
            over (partition by {{ member_key | join(', ') }} order by snapshot_date
                  rows between unbounded preceding and current row) as island
    from marked
),

stretches as (
    select
        {{ member_key | join(', ') }},
        {% for c in state_columns %}{{ value_at_max_or_null(c, "snapshot_date") }} as {{ c }},
        {% endfor %}min(snapshot_date) as valid_from,
        {{ value_at_max_or_null("next_snapshot", "snapshot_date") }} as valid_to
    from islands
    group by {{ member_key | join(', ') }}, island
)

select
    s.*,
    s.valid_to is null as is_current,
    case
        when s.valid_to is null then null
        when exists (
            select 1 from observed as o
            where {% for k in member_key %}o.{{ k }} = s.{{ k }} and {% endfor %}o.snapshot_date = s.valid_to
        ) then 'CHANGED'
        else 'LEFT'
    end as ended_because
from stretches as s
{%- endmacro %}
