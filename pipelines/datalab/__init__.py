"""The data lab: a provider asks what its program changed; the city answers against a matched
comparison, in one standard report, and then erases what the provider sent.

    requests.py   the request's own store, linking it to the integrated persons, erasure
    matching.py   who is compared with whom, balance, and each outcome's difference
    report.py     the report: JSON for systems, one HTML page for a program manager
"""
