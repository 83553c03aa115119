{#- Every rule's episodes whose window ran its course, as (rule_code, step, ...) rows. -#}
{% macro followup_episodes() -%}
    {%- set steps = {
        'int_alerts__confirmatory_test_overdue': 'venous_confirmation',
        'int_alerts__environmental_investigation_overdue': 'investigation',
        'int_alerts__case_management_overdue': 'case_management'} -%}
    {%- for model, step in steps.items() %}
    select rule_code, '{{ step }}' as step, person_id, episode_date, due_date, band, zip5,
           step_in_time
    from {{ ref(model) }}
    where window_complete
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- endfor %}
{%- endmacro %}

{#- The published measures, pivoted from (measure, n) cells; absent cells are 0. -#}
{% macro measure_columns(children=['children_tested', 'children_elevated', 'children_confirmed']) -%}
    {%- set measures = children + [
        'venous_confirmation_due', 'venous_confirmation_in_time',
        'investigation_due', 'investigation_in_time',
        'case_management_due', 'case_management_in_time'] -%}
    {%- for m in measures %}
    coalesce(sum(n) filter (where measure = '{{ m }}'), 0) as {{ m }}{% if not loop.last %},{% endif %}
    {%- endfor %}
{%- endmacro %}
