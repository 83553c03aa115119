-- One row per contract and month it was active: what the city paid for and what it bought.
-- Services by code and distinct children served (pseudonymous); among children served that
-- month who had a confirmed EBLL in the year before, how many had case management started
-- within their band's window, and how many had a lower next test. Not published as is: the
-- contract_outcomes mart suppresses small cells.
with contracts as (
    {% call latest_version('provider_contracts') %}
    select * from {{ ref('stg_providers__contracts') }}
    {% endcall %}
),

months as (
    select
        c.contract_id, c.provider_code, c.provider_name, c.amount_usd,
        c.start_date, c.end_date, c.service_codes,
        {{ month_starts('c.start_date', 'least(c.end_date, ' ~ as_of_date() ~ ')') }} as month
    from contracts as c
),

services as (
    select * from {{ ref('int_provider_services') }}
),

served as (
    select
        s.contract_id, date_trunc('month', s.service_date) as month, s.person_id,
        count(*) as services,
        count(*) filter (where s.service_code = 'LEAD_CASE_MGMT') as lead_case_mgmt,
        count(*) filter (where s.service_code = 'HOME_VISIT') as home_visit,
        count(*) filter (where s.service_code = 'NUTRITION') as nutrition,
        count(*) filter (where s.service_code = 'DEV_SCREEN') as dev_screen,
        count(*) filter (where s.service_code not in
                         ('LEAD_CASE_MGMT', 'HOME_VISIT', 'NUTRITION', 'DEV_SCREEN'))
            as other_services,
        min(s.service_date) as first_service
    from services as s
    group by all
),

-- each child's confirmed EBLL in the year before the month's first service
lead_referred as (
    select
        v.contract_id, v.month, v.person_id,
        {{ value_at_max("c.confirmation_date", "c.confirmation_date") }} as confirmation_date,
        {{ value_at_max("c.result_value", "c.confirmation_date") }} as confirming_value,
        {{ value_at_max("cm.step_in_time", "c.confirmation_date") }} as case_management_in_time
    from served as v
    inner join {{ ref('int_lead_confirmations') }} as c
        on c.person_id = v.person_id
        and c.confirmation_date <= v.first_service
        and c.confirmation_date > v.first_service - interval 365 day
    left join {{ ref('int_alerts__case_management_overdue') }} as cm
        on cm.person_id = c.person_id and cm.episode_date = c.confirmation_date
    group by all
),

next_tests as (
    select
        l.contract_id, l.month, l.person_id,
        (select t.result_value from {{ ref('int_lead_tests_classified') }} as t
         where t.person_id = l.person_id and t.sample_date > l.confirmation_date
         -- two tests the same day: the higher counts, so "lower" never rests on which of
         -- them the engine read first
         order by t.sample_date, t.result_value desc limit 1) < l.confirming_value
            as next_test_lower
    from lead_referred as l
)

select
    m.contract_id,
    m.provider_code,
    m.provider_name,
    {{ month_label("m.month") }} as month,
    m.amount_usd as contract_amount_usd,
    round(m.amount_usd / ({{ dbt.datediff("m.start_date", "m.end_date", "month") }} + 1), 2)
        as monthly_amount_usd,
    coalesce(sum(v.services), 0) as services,
    coalesce(sum(v.lead_case_mgmt), 0) as services_lead_case_mgmt,
    coalesce(sum(v.home_visit), 0) as services_home_visit,
    coalesce(sum(v.nutrition), 0) as services_nutrition,
    coalesce(sum(v.dev_screen), 0) as services_dev_screen,
    coalesce(sum(v.other_services), 0) as services_other,
    count(distinct v.person_id) as children_served,
    count(distinct l.person_id) as lead_referred_children,
    count(distinct l.person_id) filter (where l.case_management_in_time)
        as case_management_in_time,
    count(distinct n.person_id) filter (where n.next_test_lower) as next_test_lower
from months as m
left join served as v on v.contract_id = m.contract_id and v.month = m.month
left join lead_referred as l
    on l.contract_id = v.contract_id and l.month = v.month and l.person_id = v.person_id
left join next_tests as n
    on n.contract_id = l.contract_id and n.month = l.month and n.person_id = l.person_id
group by all
