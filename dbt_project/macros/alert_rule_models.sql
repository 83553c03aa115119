{#- Written by `plumbline prepare` from seeds/alert_rules.csv: every rule's model
    (int_alerts__<rule_code in lower case>), the one list the alerts mart and the
    policy facts union. Add a rule's model and its seed rows, not a line here. -#}
{% macro alert_rule_models() -%}
    {{ return([
        'int_alerts__confirmatory_test_overdue',
        'int_alerts__environmental_investigation_overdue',
        'int_alerts__case_management_overdue',
        'int_alerts__learning_support_review_overdue',
    ]) }}
{%- endmacro %}
