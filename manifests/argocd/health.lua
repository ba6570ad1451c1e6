-- Argo CD health check for salad-sd.dev/StableDiffusionDeployment.
--
-- Install it as `resource.customizations.health.salad-sd.dev_StableDiffusionDeployment` in the
-- argocd-cm ConfigMap (see argocd-cm-patch.yaml and docs/integrations.md).
--
-- Argo CD runs this with gopher-lua (Lua 5.1 syntax) and, by default, without the string
-- library, so the script uses only the base library and the `..` operator.
--
-- Rules, in order:
--   1. no status, or status.observedGeneration behind metadata.generation -> Progressing
--   2. Stalled=True (only a spec change or outside help fixes it)        -> Degraded
--   3. spec.stopped and phase Stopped                                      -> Suspended
--   4. Ready=True for the current generation                               -> Healthy
--   5. anything else                                                       -> Progressing

local function findCondition(status, conditionType)
  if status == nil or status.conditions == nil then
    return nil
  end
  for _, condition in ipairs(status.conditions) do
    if condition.type == conditionType then
      return condition
    end
  end
  return nil
end

local function firstText(a, b, c)
  if a ~= nil and a ~= "" then
    return a
  end
  if b ~= nil and b ~= "" then
    return b
  end
  return c
end

local hs = { status = "Progressing", message = "" }
local generation = nil
if obj.metadata ~= nil then
  generation = obj.metadata.generation
end
local status = obj.status

-- 1. The operator has not seen the latest spec yet: everything else in status is about an
--    older spec (or there is no status at all).
if status == nil or status.observedGeneration == nil
    or (generation ~= nil and status.observedGeneration < generation) then
  if generation ~= nil then
    hs.message = "Waiting for the operator to observe generation " .. generation
  else
    hs.message = "Waiting for the operator to observe this resource"
  end
  return hs
end

-- 2. Terminal: retrying will not help.
local stalled = findCondition(status, "Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = firstText(stalled.message, stalled.reason, "Stalled")
  return hs
end

-- 3. Deliberately stopped, and the stop has finished.
if obj.spec ~= nil and obj.spec.stopped == true and status.phase == "Stopped" then
  hs.status = "Suspended"
  hs.message = firstText(status.message, "Stopped on request (spec.stopped: true)")
  return hs
end

-- 4. Serving at the desired state, and the Ready condition is about this generation.
local ready = findCondition(status, "Ready")
if ready ~= nil and ready.status == "True"
    and ready.observedGeneration == generation
    and status.observedGeneration == generation then
  hs.status = "Healthy"
  hs.message = firstText(ready.message, status.message, "Ready")
  return hs
end

-- 5. Work in progress: say what the operator is doing.
local reconciling = findCondition(status, "Reconciling")
if reconciling ~= nil and reconciling.status == "True" then
  hs.message = firstText(reconciling.message, reconciling.reason, "Reconciling")
elseif ready ~= nil and ready.status == "True" then
  hs.message = "Ready condition describes generation " .. tostring(ready.observedGeneration)
    .. "; waiting for generation " .. tostring(generation)
elseif ready ~= nil then
  hs.message = firstText(ready.message, ready.reason,
    firstText(status.message, "Waiting for the operator to report Ready"))
else
  hs.message = firstText(status.message, "Waiting for the operator to report Ready")
end
return hs
