-- One row per provider service as known on the as-of date: its latest version delivered by
-- then (a provider re-sends a record_id when it updates the service).
{% call latest_version('provider_services') %}
select *
from {{ ref('stg_providers__services') }}
where extract_date <= {{ as_of_date() }} and service_date <= {{ as_of_date() }}
{% endcall %}
