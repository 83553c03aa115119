{#- The as-of date as a SQL date literal: the `as_of` var (`dbt build --vars`), else
    PLUMBLINE_DBT_AS_OF (what Plumbline's dbt asset passes), else today.
    The environment variable is read only when SQL is compiled to run (`execute`), never while
    dbt parses: dbt re-parses every file whose parse read an environment variable when its value
    changes, and the date changes every week. So a new week's date costs no parsing at all, and
    the SQL that runs has the date as a literal, as before. -#}
{% macro as_of_date() -%}
    {%- set v = var('as_of', '') -%}
    {%- if not v and execute -%}{%- set v = env_var('PLUMBLINE_DBT_AS_OF', '') -%}{%- endif -%}
    {%- if v -%}date '{{ v }}'{%- else -%}current_date{%- endif -%}
{%- endmacro %}

{#- A numeric parameter from the lead_parameters seed, as a scalar subquery. -#}
{% macro lead_parameter(name) -%}
    (select value from {{ ref('lead_parameters') }} where parameter = '{{ name }}')
{%- endmacro %}

{#- The first row of each partition of `rows` (a query), in `order_by`: the portable form of
    DuckDB's `qualify row_number() over (...) = 1` (Spark has no qualify). Partition and order
    by `rows`' own output columns. -#}
{% macro first_of(rows, partition_by, order_by) -%}
select * except (_first_of_rank) from (
    select _rows.*,
        row_number() over (partition by {{ partition_by }} order by {{ order_by }})
            as _first_of_rank
    from (
{{ rows }}
    ) as _rows
) as _ranked
where _first_of_rank = 1
{%- endmacro %}

{#- `first_of` over the rows of a call block: {% call keep_first('k', 'd desc') %} select ... {% endcall %} -#}
{% macro keep_first(partition_by, order_by) -%}
{{ first_of(caller(), partition_by, order_by) }}
{%- endmacro %}
