{#- Written by `plumbline prepare` from the feed registry (pipelines/feeds.py: each
    feed's src_key and semantics): each record's latest version of a warehouse source,
    kept from the rows of the call block. One rule for every model that reads versions;
    portable SQL (no `qualify`), so DuckDB and Spark run the same. -#}
{% macro latest_version(source_table) -%}
    {%- set rules = {
        'health_tests': {'partition_by': 'test_key', 'order_by': 'reported_date desc, extract_date desc'},
        'housing_inspections': {'partition_by': 'inspection_key', 'order_by': 'extract_date desc'},
        'provider_services': {'partition_by': 'service_key', 'order_by': 'extract_date desc'},
        'provider_contracts': {'partition_by': 'contract_id', 'order_by': 'extract_date desc'},
    } -%}
    {%- set rule = rules[source_table] -%}
    {{ first_of(caller(), rule.partition_by, rule.order_by) }}
{%- endmacro %}
