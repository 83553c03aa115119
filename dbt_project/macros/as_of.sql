{#- The as-of date as a SQL date literal: the `as_of` var (PLUMBLINE_AS_OF), else today. -#}
{% macro as_of_date() -%}
    {%- set v = var('as_of', '') -%}
    {%- if v -%}date '{{ v }}'{%- else -%}current_date{%- endif -%}
{%- endmacro %}

{#- A numeric parameter from the lead_parameters seed, as a scalar subquery. -#}
{% macro lead_parameter(name) -%}
    (select value from {{ ref('lead_parameters') }} where parameter = '{{ name }}')
{%- endmacro %}
