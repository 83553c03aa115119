{#- lead-followup.md: one open alert per child per rule. Fails with the offending pairs. -#}
{% test one_open_alert_per_child_and_rule(model) %}
select person_id, rule_code, count(*) as open_alerts
from {{ model }}
where status = 'OPEN'
group by person_id, rule_code
having count(*) > 1
{% endtest %}
