-- One row per change in an alert's life: OPENED on the day after its due date, and CLOSED
-- with the reason (the step arrived, a newer episode, or the agency's feedback). The alert
-- history as the data known on the as-of date tells it.
select alert_id, person_id, rule_code, assigned_agency, band, opened_on as event_date,
       'OPENED' as event, null as event_reason
from {{ ref('lead_alerts') }}
union all
select alert_id, person_id, rule_code, assigned_agency, band, closed_on, 'CLOSED', close_reason
from {{ ref('lead_alerts') }}
where closed_on is not null
