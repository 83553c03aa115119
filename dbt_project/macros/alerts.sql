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
