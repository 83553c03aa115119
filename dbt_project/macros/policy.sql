{#- Every enabled rule's episodes whose window ran its course, as (rule_code, step, ...) rows;
    `step` is the rule's published measure (alert_rules.measure). -#}
{% macro followup_episodes() -%}
    select e.rule_code, r.measure as step, e.person_id, e.episode_date, e.due_date, e.band,
           e.zip5, e.step_in_time
    from (
    {%- for model in alert_rule_models() %}
        select rule_code, person_id, episode_date, due_date, band, zip5, step_in_time,
               window_complete
        from {{ ref(model) }}
        {%- if not loop.last %}
        union all
        {%- endif %}
    {%- endfor %}
    ) as e
    inner join {{ ref('alert_rules') }} as r on r.rule_code = e.rule_code
    where e.window_complete and r.enabled
{%- endmacro %}

{#- The published measures, pivoted from (measure, n) cells; absent cells are 0. The follow-up
    pairs (<measure>_due, <measure>_in_time) are those of the enabled rules. -#}
{% macro measure_columns(children=['children_tested', 'children_elevated', 'children_confirmed']) -%}
    {%- set measures = children[:] -%}
    {%- for m in followup_measures() -%}
        {%- do measures.extend([m ~ '_due', m ~ '_in_time']) -%}
    {%- endfor -%}
    {%- for m in measures %}
    coalesce(sum(n) filter (where measure = '{{ m }}'), 0) as {{ m }}{% if not loop.last %},{% endif %}
    {%- endfor %}
{%- endmacro %}
