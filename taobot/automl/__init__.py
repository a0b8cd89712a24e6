"""AutoML searches as pure values: the plan and its replies, the trials, the search's own conditions, the views,
and the engine adapter (`engine`, the only module here that imports `tao_automl`, lazily).

- `plan`: algorithm, metric, budget and the parameters to search, per thread
- `replies`: `search.*`, `trials=`, `parallel=`, `epochs=`, `algorithm=`, `metric=` replies into plan changes
- `trials`: one trial (a recommendation and its launch), the best of them
- `conditions`: what a search needs beyond the launch gate
- `views`: the experiment card and the final reply
- `engine`: `tao_automl.AutoML` behind ask/tell, rebuilt from a journal of calls
"""
