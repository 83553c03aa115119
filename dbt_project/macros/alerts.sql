{#- The one definition of "this episode became an alert", shared by every rule: the as-of date
    is strictly past the due date, and neither the step nor a newer episode came by then. -#}
{% macro became_alert() -%}
(
    {{ as_of_date() }} > due_date
    and (step_date is null or step_date > due_date)
    and (superseded_on is null or superseded_on > due_date)
)
{%- endmacro %}

{#- The columns every rule model closes with, in one vocabulary: became_alert, window_complete
    and step_in_time (the step came by the due date). -#}
{% macro rule_outcome_columns() -%}
{{ became_alert() }} as became_alert,
    {{ window_complete() }} as window_complete,
    coalesce(step_date <= due_date, false) as step_in_time
{%- endmacro %}

{#- The episode's window has run its course, so its timeliness can be counted: the due date
    has passed, and no newer episode replaced it before it was due. -#}
{% macro window_complete() -%}
(
    {{ as_of_date() }} > due_date
    and (superseded_on is null or superseded_on > due_date)
)
{%- endmacro %}

{#- The episode columns of a rule that starts from a confirmed EBLL (`c`, with its window `w`):
    investigation and case management share them, and differ only in their step. -#}
{% macro confirmation_episode_columns() -%}
        c.person_id,
        c.confirmation_date as episode_date,
        c.band,
        w.window_days,
        w.rule_version,
        c.confirmation_date + w.window_days as due_date,
        c.confirming_test_key as evidence_test_key,
        c.confirming_test_uid as evidence_test_uid,
        c.address_key,
        c.zip5,
        c.result_value,
        c.sample_type_label,
        c.next_confirmation_date as superseded_on,
{%- endmacro %}


{#- The published follow-up measures of the enabled rules, from the alert_rules seed (read when
    dbt runs; names only, for pivoting). -#}
{% macro followup_measures() -%}
    {%- set rules = ref('alert_rules') -%}  {#- outside the branch: parsing sees the dependency #}
    {%- if execute -%}
        {%- set rows = run_query("select measure from " ~ rules
                                 ~ " where enabled order by rule_code") -%}
        {{ return(rows.columns[0].values() | list) }}
    {%- else -%}
        {{ return([]) }}
    {%- endif -%}
{%- endmacro %}

{#- The (steps due, steps taken in time) columns each enabled rule publishes, in rule-code
    order, as pairs: [('<measure>_due', '<measure>_in_time'), ...]. -#}
{% macro followup_pairs() -%}
    {%- set pairs = [] -%}
    {%- for m in followup_measures() -%}
        {%- do pairs.append((m ~ '_due', m ~ '_in_time')) -%}
    {%- endfor -%}
    {{ return(pairs) }}
{%- endmacro %}

{#- The pairs' columns, flattened: due, in time, due, in time, ... -#}
{% macro followup_pair_columns(pairs) -%}
    {%- set columns = [] -%}
    {%- for due, in_time in pairs -%}
        {%- do columns.extend([due, in_time]) -%}
    {%- endfor -%}
    {{ return(columns) }}
{%- endmacro %}
