{#-
    The grain of a model: every row has each of `columns`, and (when `unique`) no two rows
    share all of them. A model that fails this has lost or duplicated what it counts. It warns
    (a failed check in the UI) rather than stopping the run: a partner's duplicate must not
    stop every other organisation's list.
-#}
{% test grain(model, columns, unique=true) %}
{{ config(severity='warn') }}
select {{ columns | join(', ') }}, count(*) as rows_with_this_key
from {{ model }}
where {% for c in columns %}{{ c }} is null{% if not loop.last %} or {% endif %}{% endfor %}
group by all
{% if unique %}
union all
select {{ columns | join(', ') }}, count(*) as rows_with_this_key
from {{ model }}
group by all
having count(*) > 1
{% endif %}
{% endtest %}
