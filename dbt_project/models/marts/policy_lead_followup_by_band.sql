-- One row per month and band (and all bands, band = ALL): children confirmed and follow-up
-- steps due and done in time with their shares, suppressed for publication like every table
-- (macros/suppression.sql).
{%- set pairs = followup_pairs() %}
{%- set measures = ['children_confirmed'] + followup_pair_columns(pairs) %}

with published as (
    {{ suppressed_cells(ref('int_policy_facts_by_band'), ['month'], 'band', measures, pairs) }}
)

select * from published
order by month, band
