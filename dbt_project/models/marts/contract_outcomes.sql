-- One row per contract per month, and one for the contract to date (month = ALL): what the
-- city paid, what it bought (services by code, children served), and what changed (among
-- lead-referred children: case management in time, a lower next test), with the cost per child
-- who reached an outcome. A month still under way is not complete (month_complete); a month's
-- outcomes are final only once outcome_window_days (lead_parameters) have passed since it ended
-- (outcomes_final); the page shows "not yet" until then, never a 0 that only means "too soon".
-- Suppressed like every published table: no count from 1 to 10 can be read or worked out.
{%- set pairs = [('lead_referred_children', 'case_management_in_time'),
                 ('lead_referred_children', 'next_test_lower')] %}
{%- set measures = ['services', 'services_lead_case_mgmt', 'services_home_visit',
                    'services_nutrition', 'services_dev_screen', 'services_other',
                    'children_served', 'lead_referred_children', 'case_management_in_time',
                    'next_test_lower'] %}

with facts as (
    select * from {{ ref('int_contract_month_facts') }}
),

published as (
    {{ suppressed_cells('facts', ['contract_id'], 'month', measures, pairs) }}
),

contracts as (
    select
        contract_id,
        max(provider_code) as provider_code,
        max(provider_name) as provider_name,
        max(contract_amount_usd) as contract_amount_usd,
        round(sum(monthly_amount_usd), 2) as paid_to_date_usd,
        max(cast(month || '-01' as date)) as last_month
    from facts
    group by contract_id
),

outcome_window as (
    select cast(value as {{ dbt.type_int() }}) as days
    from {{ ref('lead_parameters') }}
    where parameter = 'outcome_window_days'
),

dated as (
    select
        p.*,
        c.provider_code,
        c.provider_name,
        c.contract_amount_usd,
        case when p.month = 'ALL' then c.paid_to_date_usd else f.monthly_amount_usd end
            as monthly_amount_usd,
        case when p.month = 'ALL' then null else cast(p.month || '-01' as date) end as month_start,
        case when p.month = 'ALL' then c.last_month else cast(p.month || '-01' as date) end
            as last_month_counted,
        w.days as outcome_window_days
    from published as p
    inner join contracts as c on c.contract_id = p.contract_id
    left join facts as f on f.contract_id = p.contract_id and f.month = p.month
    cross join outcome_window as w
)

select
    contract_id,
    provider_code,
    provider_name,
    month,
    contract_amount_usd,
    monthly_amount_usd,
    {%- for m in measures %}
    {{ m }},
    {%- endfor %}
    {%- for _, in_time in pairs %}
    share_{{ in_time }},
    {%- endfor %}
    coalesce(month_start < cast({{ dbt.date_trunc('month', as_of_date()) }} as date), false)
        as month_complete,
    -- the month's last day, plus the outcome window, is before the as-of date
    cast({{ dbt.dateadd('day', 'outcome_window_days',
                        dbt.last_day('last_month_counted', 'month')) }} as date)
        < {{ as_of_date() }} as outcomes_final,
    {{ round_half_even('monthly_amount_usd / nullif(next_test_lower, 0)', 2) }}
        as cost_per_child_with_lower_next_test
from dated
order by contract_id, month
