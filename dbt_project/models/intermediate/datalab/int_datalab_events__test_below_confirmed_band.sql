-- Data-lab outcome events: a test below the lower bound of the band of the person's latest
-- confirmed EBLL before it (a censored result counts when its bound is at or below that).
with tests as (
    select * from {{ ref('int_lead_tests_classified') }}
),

confirmations as (
    select * from {{ ref('int_lead_confirmations') }}
),

bands as (
    select * from {{ ref('lead_bands') }}
),

latest_before as (
    {% call keep_first('test_key', 'confirmation_date desc, confirming_test_key') %}
    select t.test_key, t.person_id, t.sample_date, t.result_value, t.result_censored, c.band,
        c.confirmation_date, c.confirming_test_key
    from tests as t
    inner join confirmations as c
        on c.person_id = t.person_id and c.confirmation_date < t.sample_date
    {% endcall %}
)

select l.person_id, l.sample_date as event_date
from latest_before as l
inner join bands as b on b.band = l.band
where l.result_value < b.lower_ug_dl
   or (l.result_censored and l.result_value <= b.lower_ug_dl)
