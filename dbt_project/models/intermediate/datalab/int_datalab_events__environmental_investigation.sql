-- Data-lab outcome events: a lead risk assessment of a dwelling where the child had a
-- confirmed EBLL, on the inspection date.
select distinct c.person_id, r.inspection_date as event_date
from {{ ref('int_lead_confirmations') }} as c
inner join {{ ref('int_lead_risk_assessments') }} as r on r.address_key = c.address_key
