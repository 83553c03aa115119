{#- The one definition of "this episode became an alert", shared by every rule: the as-of date
    is strictly past the due date, and neither the step nor a newer episode came by then. -#}
{% macro became_overdue() -%}
where {{ as_of_date() }} > due_date
  and (step_date is null or step_date > due_date)
  and (superseded_on is null or superseded_on > due_date)
{%- endmacro %}
