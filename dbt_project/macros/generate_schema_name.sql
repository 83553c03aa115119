{#- Use the folder's schema as is (staging, intermediate, marts, rules): the warehouse's
    table names (marts.lead_alerts) are a public interface. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}{{ target.schema }}{%- else -%}{{ custom_schema_name | trim }}{%- endif -%}
{%- endmacro %}
