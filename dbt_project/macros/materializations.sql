{#- Tables and views on DuckDB, each replaced by one statement.

    dbt's own table and view materializations build a model under a temporary name, rename the
    old relation away, rename the new one in and drop the old: five statements, each with its
    events and cache bookkeeping, written for databases that cannot replace a relation in one
    step. DuckDB can (CREATE OR REPLACE, in the same transaction as before), and a weekly run
    rebuilds some 36 relations, so this is about a third of each model's time in dbt.

    Readers see the same thing either way: the old relation until the commit, the new one after.
    Anything these two do not handle (an enforced contract, grants, indexes, a SQL header,
    DuckLake partitioning or sorting, a Python model) goes to dbt-duckdb's own materialization,
    unchanged. Spark builds through dbt-spark's. -#}

{% macro plumbline_replaces_in_one_statement() -%}
    {%- set contract = config.get('contract') -%}
    {{ return(model.get('language', 'sql') == 'sql'
              and not (contract and contract.enforced)
              and not config.get('grants')
              and not config.get('indexes')
              and not config.get('partitioned_by')
              and not config.get('sorted_by')
              and not config.get('sql_header')) }}
{%- endmacro %}

{#- The model replaced as a `kind` ('table' or 'view') in one statement, between its hooks. -#}
{% macro plumbline_replace_relation(kind) %}
  {%- set existing_relation = load_cached_relation(this) -%}
  {%- set target_relation = this.incorporate(type=kind) -%}

  {{ run_hooks(pre_hooks, inside_transaction=False) }}
  -- `BEGIN` happens here:
  {{ run_hooks(pre_hooks, inside_transaction=True) }}
  {% if existing_relation is not none and existing_relation.type != kind %}
    {{ adapter.drop_relation(existing_relation) }}
  {% endif %}
  {% call statement('main') -%}
    create or replace {{ kind }} {{ target_relation }} as (
      {{ sql }}
    );
  {%- endcall %}
  {{ run_hooks(post_hooks, inside_transaction=True) }}
  {% do persist_docs(target_relation, model) %}
  -- `COMMIT` happens here
  {{ adapter.commit() }}
  {{ run_hooks(post_hooks, inside_transaction=False) }}

  {{ return({'relations': [target_relation]}) }}
{% endmacro %}

{#- The model as a `kind`, or by `fallback` (dbt-duckdb's own) where one statement will not do. -#}
{% macro plumbline_materialize(kind, fallback) %}
  {%- if not plumbline_replaces_in_one_statement() -%}
    {{ return(fallback()) }}
  {%- endif -%}
  {{ return(plumbline_replace_relation(kind)) }}
{% endmacro %}

{% materialization table, adapter='duckdb' %}
  {{ return(plumbline_materialize('table', dbt.materialization_table_duckdb)) }}
{% endmaterialization %}

{% materialization view, adapter='duckdb' %}
  {{ return(plumbline_materialize('view', dbt.materialization_view_default)) }}
{% endmaterialization %}
