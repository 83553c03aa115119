-- Data-lab outcome events: every blood lead test of a person, on its sample date.
select person_id, sample_date as event_date
from {{ ref('int_lead_tests_classified') }}
