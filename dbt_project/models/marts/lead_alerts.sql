-- One row per alert: a rule and an episode (the screening or confirming test it started
-- from), as the data known on the as-of date says. An alert opens the day after its due date
-- and closes at the first of: the missing step recorded, a newer episode superseding it (or,
-- for a school, the child leaving the roster), or closing feedback from an organisation whose
-- list carried it. alert_id is the rule and the episode's test (its anchor: a hash under the
-- data dir's own salt, unchanged when the pseudonym key is rotated), never the person_id: when
-- linkage merges or splits people, the alert, its list line and its feedback keep their id.
with unioned as (
    {{ union_by_name(alert_rule_models(), 'intermediate') }}
),

-- the provider that serves the child (its latest service as known on the as-of date): a
-- provider's alert goes to that provider alone
serving as (
    select person_id, {{ value_at_max("provider_code", "service_date") }} as provider_code
    from {{ ref('int_provider_services') }}
    group by person_id
),

routing as (
    select * from {{ ref('alert_routing') }}
),

alerts as (
    {% call keep_first('rule_code, evidence_test_uid', 'routed_by_band desc nulls last') %}
    select
        substr(md5(u.rule_code || '|' || u.evidence_test_uid), 1, 16) as alert_id,
        u.*,
        r.assigned_agency,
        case
            when r.assigned_agency <> 'providers' then r.assigned_agency
            else coalesce(s.provider_code, rt.route_to, 'health')
        end as assigned_organisation,
        r.assigned_agency = 'providers' and s.provider_code is null as is_referral,
        {{ dbt.datediff('u.due_date', as_of_date(), 'day') }}
            > cast({{ lead_parameter('backlog_horizon_days') }} as integer) as is_old_episode,
        case
            when {{ dbt.datediff('u.due_date', as_of_date(), 'day') }}
                > cast({{ lead_parameter('backlog_horizon_days') }} as integer)
                then r.backlog_next_step
            when r.assigned_agency = 'providers' and s.provider_code is null
                then coalesce(rt.next_step, r.next_step)
            else r.next_step
        end as next_step,
        rt.band = u.band as routed_by_band
    from unioned as u
    inner join {{ ref('alert_rules') }} as r on r.rule_code = u.rule_code
    left join serving as s on s.person_id = u.person_id
    left join routing as rt
        on rt.rule_code = u.rule_code and rt.band in (u.band, '*')
    where u.became_alert and r.enabled
    {% endcall %}
),

feedback as (
    -- feedback as delivered by the as-of date; ingest accepts a line only from an
    -- organisation whose list carried that alert (an alert can move, say from one provider to
    -- another, and what the first one said about it still stands)
    select f.*
    from {{ ref('stg_feedback__alert_feedback') }} as f
    inner join alerts as a on a.alert_id = f.alert_id
    where f.extract_date <= {{ as_of_date() }} and f.recorded_date <= {{ as_of_date() }}
),

feedback_summary as (
    select
        alert_id,
        min(recorded_date) filter (
            where feedback_status in ('RESOLVED', 'NOT_APPLICABLE', 'WRONG_PERSON')
        ) as feedback_closed_on,
        {{ value_at_min("feedback_status", "recorded_at") }} filter (
            where feedback_status in ('RESOLVED', 'NOT_APPLICABLE', 'WRONG_PERSON')
        ) as feedback_closing_status,
        count(*) filter (
            where feedback_status in ('IN_PROGRESS', 'UNABLE_TO_CONTACT')
        ) as contact_attempts,
        {{ value_at_max("feedback_status", "recorded_at") }} as last_feedback_status
    from feedback
    group by alert_id
),

lifecycle as (
    select
        a.*,
        f.feedback_closed_on,
        f.feedback_closing_status,
        coalesce(f.contact_attempts, 0) as contact_attempts,
        f.last_feedback_status,
        a.due_date + 1 as opened_on,
        least(a.step_date, a.superseded_on, f.feedback_closed_on) as closed_on
    from alerts as a
    left join feedback_summary as f on f.alert_id = a.alert_id
),

closed as (
    select
        *,
        case
            when closed_on is null then null
            when closed_on = step_date then 'STEP_RECORDED'
            when closed_on = feedback_closed_on then 'FEEDBACK_' || feedback_closing_status
            else 'SUPERSEDED'
        end as close_reason
    from lifecycle
)

select
    alert_id,
    person_id,
    rule_code,
    assigned_agency,
    assigned_organisation,
    is_referral,
    band,
    due_date,
    {{ dbt.datediff("due_date", "coalesce(closed_on, " ~ as_of_date() ~ ")", "day") }} as days_overdue,
    case when closed_on is null then 'OPEN' else 'CLOSED' end as status,
    reason_open || case close_reason
        when 'STEP_RECORDED' then ' Closed: ' || reason_step || ', after the due date.'
        when 'SUPERSEDED' then ' Closed: ' || coalesce(reason_superseded,
            'a newer test on ' || superseded_on || ' started a new episode') || '.'
        when 'FEEDBACK_RESOLVED' then ' Closed: the agency reported it resolved on '
            || feedback_closed_on || '.'
        when 'FEEDBACK_NOT_APPLICABLE' then ' Closed: the agency reported it not applicable on '
            || feedback_closed_on || '.'
        when 'FEEDBACK_WRONG_PERSON' then ' Withdrawn: the agency reported on '
            || feedback_closed_on || ' that these records are not one child.'
        else ''
    end as reason,
    next_step,
    is_old_episode,
    -- lifecycle
    episode_date,
    opened_on,
    closed_on,
    close_reason,
    step_date,
    contact_attempts,
    last_feedback_status,
    -- the rule as applied
    window_days,
    rule_version,
    -- evidence for the organisation's list (pseudonymous; the outbox re-identifies from the
    -- vault, each organisation only with what it sent or the reason needs)
    evidence_test_key,
    evidence_student_key,
    address_key,
    zip5,
    result_value,
    {{ as_of_date() }} as as_of_date
from closed
