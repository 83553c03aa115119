{#- The one definition of "this episode became an alert", shared by every rule: the as-of date
    is strictly past the due date, and neither the step nor a newer episode came by then. -#}
{% macro became_alert() -%}
(
    {{ as_of_date() }} > due_date
    and (step_date is null or step_date > due_date)
    and (superseded_on is null or superseded_on > due_date)
)
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
        c.address_key,
        c.zip5,
        c.result_value,
        c.sample_type_label,
        c.next_confirmation_date as superseded_on,
{%- endmacro %}
