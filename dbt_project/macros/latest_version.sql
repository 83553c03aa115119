{#- Written by `plumbline prepare` from the feed registry (pipelines/feeds.py: each
    feed's src_key and semantics): the `qualify` that keeps each record's latest
    version of a warehouse source. One rule for every model that reads versions. -#}
{% macro latest_version(source_table) -%}
    {%- set rules = {
        'health_tests': {'partition_by': 'test_key', 'order_by': 'reported_date desc, extract_date desc'},
        'housing_inspections': {'partition_by': 'inspection_key', 'order_by': 'extract_date desc'},
        'provider_services': {'partition_by': 'service_key', 'order_by': 'extract_date desc'},
        'provider_contracts': {'partition_by': 'contract_id', 'order_by': 'extract_date desc'},
    } -%}
    {%- set rule = rules[source_table] -%}
    qualify row_number() over (
        partition by {{ rule.partition_by }} order by {{ rule.order_by }}
    ) = 1
{%- endmacro %}
