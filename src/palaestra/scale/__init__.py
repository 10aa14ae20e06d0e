"""Environment copies on several machines, through Ray (`env_settings.ray`, docs/scale-out.md).

Ray actors each step a share of the copies and act with their own copy of the policies, a
whole chunk of steps per call; the trainers stay in the training process, which replays each
chunk through the usual agent processors. `ray` is imported only by this package's modules
that need it, and only when a run asks for Ray, so palaestra imports and runs without it
(``pip install "palaestra[ray]"``):

- `rollout_actor`: what runs inside an actor (`RolloutActor`) and what it is sent
  (`PolicyRecipe`, `actor_state`); no `ray` import at all.
- `rollout_wire`: what an actor sends back (`Rollout` of `BehaviorStep`s) and its form on the
  wire, by columns (a chunk's fields concatenated over its steps), cut back into steps on
  arrival.
- `ray_fleet`: connecting to Ray, the actors (start, replace within the restart quota, close).
- `ray_manager`: `RayEnvManager`, what the controller drives instead of `EnvManager`: the
  pipeline that keeps one chunk per actor in flight, the weights in the object store, replay.
"""
