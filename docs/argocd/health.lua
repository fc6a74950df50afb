-- Argo CD health of DatabaseMigration, DatabaseBackup and DatabaseRestore, and of the sets DatabaseMigrationSet
-- and DatabaseBackupSet, from their status conditions.
-- Healthy: Ready=True (and a backup not Stale); a migration set Complete=True.
-- Suspended: waiting for approval, or a suspended schedule.
-- Degraded: the run failed, rolled back or was cancelled, a Job cannot start, or no backup succeeded within staleAfter;
-- a migration set Halted=True (or finished with failures), a backup set with stale or failed targets.
-- Progressing: everything else (the operator has not caught up, a Job is running, a set rolls out).
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
local halted = conditions["Halted"]
local complete = conditions["Complete"]
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
if halted ~= nil and halted.status == "True" then
  hs.status = "Degraded"
  hs.message = message
  return hs
end
if complete ~= nil and complete.status == "True" then
  hs.status = "Healthy"
  hs.message = message
  return hs
end
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = message
  return hs
end
if status.phase == "Failed" or status.phase == "RolledBack" or status.phase == "Cancelled"
    or status.phase == "Degraded" then
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
