{#- SQL that differs between the warehouse engines (DuckDB, Spark), in one place. Models use
    these and dbt's cross-database macros (dbt.datediff, dbt.dateadd); nothing engine-only is
    written in a model (tests/test_portable_sql.py reads them for it). -#}

{#- x on the row where `by` is largest, among rows where x is not null (DuckDB's arg_max). -#}
{% macro value_at_max(x, by) -%}
    {{ return(adapter.dispatch('value_at_max')(x, by)) }}
{%- endmacro %}
{% macro default__value_at_max(x, by) -%}arg_max({{ x }}, {{ by }}){%- endmacro %}
{% macro spark__value_at_max(x, by) -%}
max_by({{ x }}, case when {{ x }} is not null then {{ by }} end)
{%- endmacro %}

{#- x on the row where `by` is smallest, among rows where x is not null (DuckDB's arg_min). -#}
{% macro value_at_min(x, by) -%}
    {{ return(adapter.dispatch('value_at_min')(x, by)) }}
{%- endmacro %}
{% macro default__value_at_min(x, by) -%}arg_min({{ x }}, {{ by }}){%- endmacro %}
{% macro spark__value_at_min(x, by) -%}
min_by({{ x }}, case when {{ x }} is not null then {{ by }} end)
{%- endmacro %}

{#- x on the row where `by` is largest, null or not (DuckDB's arg_max_null). -#}
{% macro value_at_max_or_null(x, by) -%}
    {{ return(adapter.dispatch('value_at_max_or_null')(x, by)) }}
{%- endmacro %}
{% macro default__value_at_max_or_null(x, by) -%}arg_max_null({{ x }}, {{ by }}){%- endmacro %}
{% macro spark__value_at_max_or_null(x, by) -%}max_by({{ x }}, {{ by }}){%- endmacro %}

{#- One row per month start from `start`'s month to `end`'s, as a select-list expression
    that yields rows. -#}
{% macro month_starts(start, end) -%}
    {{ return(adapter.dispatch('month_starts')(start, end)) }}
{%- endmacro %}
{% macro default__month_starts(start, end) -%}
unnest(generate_series(date_trunc('month', {{ start }}), date_trunc('month', {{ end }}),
                       interval 1 month))
{%- endmacro %}
{% macro spark__month_starts(start, end) -%}
explode(sequence(date_trunc('month', {{ start }}), date_trunc('month', {{ end }}),
                 interval 1 month))
{%- endmacro %}

{#- Does array `values` hold `value`? -#}
{% macro array_has(values, value) -%}array_contains({{ values }}, {{ value }}){%- endmacro %}

{#- `union all` of models by column name: a column one model lacks is null there. The columns
    are read from each model's table in the warehouse, in `schema` (in a unit test its rows
    are a fixture, which has the same columns). -#}
{% macro union_by_name(models, schema) -%}
    {%- set columns = [] -%}
    {%- set types = {} -%}
    {%- set have = {} -%}
    {%- for m in models -%}
        {%- do have.update({m: []}) -%}
        {%- if execute -%}
            {%- set built = ref(m) -%}
            {#- in a unit test, ref() names the fixture; the model's table is in its layer -#}
            {%- set table = adapter.get_relation(
                    database=built.database if built.schema else target.database,
                    schema=built.schema or generate_schema_name(schema, none),
                    identifier=built.identifier if built.schema else m) -%}
            {%- if table is none -%}
                {{ exceptions.raise_compiler_error("union_by_name: " ~ m ~ " is not built yet") }}
            {%- endif -%}
            {%- for c in adapter.get_columns_in_relation(table) -%}
                {%- do have[m].append(c.name | lower) -%}
                {%- if c.name | lower not in columns -%}
                    {%- do columns.append(c.name | lower) -%}
                    {%- do types.update({c.name | lower: c.data_type}) -%}
                {%- endif -%}
            {%- endfor -%}
        {%- endif -%}
    {%- endfor -%}
    {%- for m in models %}
    select
        {%- for c in columns %}
        {% if c in have[m] %}{{ c }}{% else %}cast(null as {{ types[c] }}) as {{ c }}{% endif %}{% if not loop.last %},{% endif %}
        {%- endfor %}
    from {{ ref(m) }}
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- endfor %}
{%- endmacro %}

{#- dbt-spark's session connection pastes seed values into its insert unescaped, so a seed
    cell with an apostrophe ("the child's doctor") breaks the statement. The same insert with
    each value written as an escaped Spark literal. -#}
{% macro spark__load_csv_rows(model, agate_table) %}
    {%- set column_override = model['config'].get('column_types', {}) -%}
    {%- set statements = [] -%}
    {%- for chunk in agate_table.rows | batch(get_batch_size()) -%}
        {%- set sql -%}
            insert into {{ this.render() }} values
            {% for row in chunk -%}
                ({%- for col_name in agate_table.column_names -%}
                    {%- set type = column_override.get(col_name, adapter.convert_type(agate_table, loop.index0)) -%}
                    {%- set value = row[loop.index0] -%}
                    cast({% if value is none %}null{% else %}'{{ (value | string).replace('\\', '\\\\').replace("'", "\\'") }}'{% endif %} as {{ type }})
                    {%- if not loop.last %},{% endif -%}
                {%- endfor -%})
                {%- if not loop.last %},{% endif %}
            {% endfor %}
        {%- endset -%}
        {%- do adapter.add_query(sql, abridge_sql_log=True) -%}
        {%- if loop.index0 == 0 -%}{%- do statements.append(sql) -%}{%- endif -%}
    {%- endfor -%}
    {{ return(statements[0] if statements else '') }}
{% endmacro %}
