"""OffPolicyTrainer: replay capacity, warm-up and the steps-per-update ratio."""
import numpy as np

from helpers import run_context
from palaestra import (ActionSpec, AgentBuffer, obs_key, BehaviorSpec, NetworkSettings,
                       ObservationSpec, OffPolicyHyperparamSettings, OffPolicyTrainer,
                       SimpleActor, TorchOptimizer, TorchPolicy, TrainerSettings,
                       Trajectory)


class CountingOptimizer(TorchOptimizer):
    def __init__(self, policy, settings):
        super().__init__(policy, settings)
        self.batches = []

    def update(self, batch: AgentBuffer, num_sequences: int):
        self.batches.append(batch.num_experiences)
        return {"Losses/Fake": 1.0}


class ReplayTrainer(OffPolicyTrainer[OffPolicyHyperparamSettings]):
    @staticmethod
    def get_trainer_name():
        return "replay"

    def create_policy(self, parsed_behavior_id, behavior_spec):
        return TorchPolicy(self.seed, behavior_spec, self.trainer_settings.network_settings,
                           SimpleActor, {})

    def create_optimizer(self):
        return CountingOptimizer(self.policy, self.trainer_settings)

    def _process_trajectory(self, trajectory):
        super()._process_trajectory(trajectory)
        self._append_to_update_buffer(trajectory.to_agentbuffer())


def _trajectory(n, start):
    obs = np.arange(start, start + n, dtype=np.float32)[:, None].repeat(2, 1)
    return Trajectory([obs], [obs[-1] + 1], np.zeros((n, 1), np.float32),
                      np.zeros((n, 0), np.int64), np.zeros(n, np.float32), np.ones(n, np.float32),
                      None, False, False, 0, "B")


def test_replay_warmup_ratio_and_capacity(tmp_path):
    hp = OffPolicyHyperparamSettings(batch_size=16, buffer_size=100, buffer_init_steps=40,
                                     steps_per_update=2.0)
    settings = TrainerSettings(trainer_type="replay", hyperparameters=hp,
                               network_settings=NetworkSettings(hidden_units=8, num_layers=1),
                               max_steps=10_000, summary_freq=10_000, checkpoint_interval=10_000)
    spec = BehaviorSpec([ObservationSpec((2,))], ActionSpec.create_continuous(1))
    trainer = ReplayTrainer.build("B", settings, spec, run_context(tmp_path))
    optimizer = trainer.optimizer

    trainer.publish_trajectory(_trajectory(30, 0))
    trainer.advance()
    assert optimizer.batches == []  # still warming up (30 < buffer_init_steps)

    step = 30
    for _ in range(10):
        trainer.publish_trajectory(_trajectory(20, step))
        step += 20
        trainer.advance()
    assert trainer.get_step == 230
    # (230 - 40) / 2 = 95 gradient steps, all on full minibatches
    assert len(optimizer.batches) == 95 and set(optimizer.batches) == {16}
    # the replay buffer keeps the newest buffer_size experiences
    assert trainer.update_buffer.num_experiences == 100
    kept = trainer.update_buffer[obs_key(0)][:, 0]
    np.testing.assert_array_equal(kept, np.arange(130, 230, dtype=np.float32))
    assert trainer.stats_reporter.get_stats_summaries("Losses/Fake").mean == 1.0


def test_replay_buffer_is_saved_with_checkpoints_and_restored_on_resume(tmp_path):
    hp = OffPolicyHyperparamSettings(batch_size=8, buffer_size=50, buffer_init_steps=0,
                                     steps_per_update=4.0, save_replay_buffer=True)
    settings = TrainerSettings(trainer_type="replay", hyperparameters=hp,
                               network_settings=NetworkSettings(hidden_units=8, num_layers=1),
                               max_steps=10_000, summary_freq=10_000, checkpoint_interval=40)
    spec = BehaviorSpec([ObservationSpec((2,))], ActionSpec.create_continuous(1))

    def make(load):
        return ReplayTrainer.build("B", settings, spec,
                                   run_context(tmp_path, resume=load))

    first = make(False)
    for start in range(0, 60, 20):
        first.publish_trajectory(_trajectory(20, start))
        first.advance()
    first.save_model()  # at 60 steps
    saved = first.update_buffer[obs_key(0)][:, 0].copy()
    resumed = make(True)
    assert resumed.get_step == 60 and resumed.update_steps == first.update_steps == 15
    np.testing.assert_array_equal(resumed.update_buffer[obs_key(0)][:, 0], saved)
    resumed.publish_trajectory(_trajectory(4, 60))
    resumed.advance()
    assert len(resumed.optimizer.batches) == 1  # one new update, no catching up


def _paced_trainer(tmp_path, threaded, steps_elsewhere=False, time_horizon=10):
    hp = OffPolicyHyperparamSettings(batch_size=4, buffer_size=1000, buffer_init_steps=0,
                                     steps_per_update=1.0)
    settings = TrainerSettings(trainer_type="replay", hyperparameters=hp, threaded=threaded,
                               network_settings=NetworkSettings(hidden_units=8, num_layers=1),
                               max_steps=10_000, summary_freq=10_000, checkpoint_interval=10_000,
                               time_horizon=time_horizon)
    spec = BehaviorSpec([ObservationSpec((2,))], ActionSpec.create_continuous(1))
    return ReplayTrainer.build("B", settings, spec,
                               run_context(tmp_path, env_steps_elsewhere=steps_elsewhere))


def test_threaded_spreads_a_trajectorys_gradient_steps_over_the_following_advances(tmp_path):
    trainer = _paced_trainer(tmp_path, threaded=True)
    optimizer = trainer.optimizer
    per_advance = []
    for burst in range(3):
        trainer.publish_trajectory(_trajectory(10, 10 * burst))
        for _ in range(10):  # the advances of the next horizon's environment steps
            before = len(optimizer.batches)
            trainer.advance()
            per_advance.append(len(optimizer.batches) - before)
    # 10 due per trajectory, a tenth of the backlog (at least one) per advance: never a
    # burst, and every due gradient step taken before the next trajectory arrives
    assert max(per_advance) <= 2 and sum(per_advance) == 30 == trainer.update_steps
    assert per_advance[:10] == [1] * 10


def test_unthreaded_takes_every_due_gradient_step_at_once(tmp_path):
    trainer = _paced_trainer(tmp_path, threaded=False, steps_elsewhere=True)
    trainer.publish_trajectory(_trajectory(10, 0))
    trainer.advance()
    assert len(trainer.optimizer.batches) == 10
    trainer.advance()
    assert len(trainer.optimizer.batches) == 10


def test_threaded_unset_follows_where_the_environment_steps(tmp_path):
    assert _paced_trainer(tmp_path / "a", threaded=None, steps_elsewhere=True).paced
    assert not _paced_trainer(tmp_path / "b", threaded=None, steps_elsewhere=False).paced
    assert _paced_trainer(tmp_path / "c", threaded=True, steps_elsewhere=False).paced


def test_threaded_clones_once_per_batch_of_new_steps(tmp_path):
    class CountingCloner:
        calls = 0

        def update(self):
            CountingCloner.calls += 1
            return {"Losses/Pretraining Loss": 0.5}

    for threaded in (False, True):
        CountingCloner.calls = 0
        trainer = _paced_trainer(tmp_path / str(threaded), threaded=threaded)
        trainer.optimizer.bc_module = CountingCloner()
        for burst in range(3):
            trainer.publish_trajectory(_trajectory(10, 10 * burst))
            for _ in range(10):
                trainer.advance()
        assert trainer.update_steps == 30
        assert CountingCloner.calls == 3, threaded  # as often paced as not


def test_threaded_keeps_up_when_trajectories_are_shorter_than_the_horizon(tmp_path):
    """Four agents' 10-step trajectories every 10 advances (episodes shorter than a horizon of
    100): 40 gradient steps due per arrival, spread over the 10 advances until the next, so
    the backlog never grows past one arrival's."""
    trainer = _paced_trainer(tmp_path, threaded=True, time_horizon=100)
    step = 0
    for _ in range(6):
        for agent in range(4):
            trajectory = _trajectory(10, step)
            trajectory.agent_id = agent
            trainer.publish_trajectory(trajectory)
        step += 10
        for _ in range(10):
            trainer.advance()
        assert trainer.get_step - trainer.update_steps <= 40
    assert trainer.update_steps >= trainer.get_step - 40
