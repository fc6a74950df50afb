-- Argo CD health of DatabaseMigration, DatabaseBackup and DatabaseRestore, from their status conditions.
-- Healthy: Ready=True (and a backup not Stale). Suspended: waiting for approval, or a suspended schedule.
-- Degraded: the run failed, rolled back or was cancelled, a Job cannot start, or no backup succeeded within staleAfter.
-- Progressing: everything else (the operator has not caught up, or a Job is running).
local hs = { status = "Progressing", message = "Waiting for the pgwarden operator" }
if obj.status == nil then
  return hs
end
local status = obj.status
local generation = obj.metadata and obj.metadata.generation
if generation ~= nil and status.observedGeneration ~= nil and status.observedGeneration < generation then
  hs.message = "Waiting for the pgwarden operator to observe generation " .. generation
  return hs
end

local conditions = {}
if status.conditions ~= nil then
  for _, condition in ipairs(status.conditions) do
    conditions[condition.type] = condition
  end
end
local ready = conditions["Ready"]
local stale = conditions["Stale"]
local message = status.message or (ready and ready.message) or ""

if status.phase == "AwaitingApproval" or status.phase == "Suspended" then
  hs.status = "Suspended"
  hs.message = message
  return hs
end
if stale ~= nil and stale.status == "True" then
  hs.status = "Degraded"
  hs.message = stale.message
  return hs
end
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = message
  return hs
end
if status.phase == "Failed" or status.phase == "RolledBack" or status.phase == "Cancelled" then
  hs.status = "Degraded"
  hs.message = message
  return hs
end
if ready ~= nil and (ready.reason == "JobCannotStart" or ready.reason == "JobNotCreated"
    or ready.reason == "InvalidSpec" or ready.reason == "BackupNotFound") then
  hs.status = "Degraded"
  hs.message = message
  return hs
end
hs.message = message ~= "" and message or hs.message
return hs
