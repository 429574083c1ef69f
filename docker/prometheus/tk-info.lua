-- redis_exporter --script: turns the `INFO tk` section into metrics.
--
-- The exporter runs this with EVAL on every scrape and publishes each
-- name/value pair it returns as redis_script_values{key="<name>"}. It has no
-- generic module-metrics option in 1.45, and INFO is one of the few commands
-- a script may call on any instance (read-only, no keys), so the counters
-- come out exactly as INFO reports them.
--
-- tk_module_loaded is always returned: 1 when the section has fields, 0 when
-- the module is not loaded (INFO tk is then empty). Alerting on its value
-- rather than on a missing series works even before the first successful
-- scrape of a freshly started instance.
local result = {}
local loaded = 0
local info = redis.call('INFO', 'tk')
for name, value in string.gmatch(info, '(tk_[%w_]+):(%d+)') do
    loaded = 1
    table.insert(result, name)
    table.insert(result, value)
end
table.insert(result, 'tk_module_loaded')
table.insert(result, tostring(loaded))
return result
