"""Customer list resyncs: read every member page, stage it, diff it with the stored membership.

`runs` starts, schedules and resumes them; `reader` follows the pages; `stager` stages each page
and ends the run; `diff` applies the difference; `staging` is the run's own table; `report`
says how they went.
"""
