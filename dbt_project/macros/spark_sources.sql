{#- On Spark, the src tables are Parquet files the warehouse_sources asset writes under
    DATA_DIR/spark/src/<table>; each run points the catalog's src.<table> at them (an external
    table: dropping it never touches the files). DuckDB reads its src schema as it is. -#}
{% macro register_spark_sources() -%}
    {%- if target.type == 'spark' and execute -%}
        {%- set root = (env_var('PLUMBLINE_DATA_DIR') ~ '/spark/src') | replace("\\", "\\\\") | replace("'", "\\'") -%}
        {%- do run_query('create database if not exists src') -%}
        {%- for node in graph.sources.values() if node.source_name == 'src' -%}
            {%- do run_query('drop table if exists src.' ~ node.name) -%}
            {%- do run_query("create table src." ~ node.name ~ " using parquet location '"
                             ~ root ~ "/" ~ node.name ~ "'") -%}
        {%- endfor -%}
    {%- endif -%}
    select 1
{%- endmacro %}
