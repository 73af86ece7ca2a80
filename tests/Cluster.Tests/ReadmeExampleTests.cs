// This file is the README's "Test your model's convergence with Akka.TestKit" example, verbatim.
using Akka.TestKit.Xunit2;
using DistTrain.Cnn.Data;
using DistTrain.Cnn.Models;
using DistTrain.Cnn.Training;
using DistTrain.Coordinator.Cluster;
using DistTrain.Protocol;

public class MyModelConvergesOnACluster() : TestKit(ProtocolConfig.Local())
{
    [Fact]
    public async Task Three_workers_learn_the_synthetic_digits()
    {
        var plan = new TrainingPlan { Model = Presets.LeNet5, Epochs = 2, GlobalBatch = 64, LearningRate = 0.02 };
        var data = DatasetFolder.Synthetic(trainCount: 640, testCount: 200, seed: 1);

        var cluster = InProcessCluster.Start(Sys, plan, data, workers: 3);
        var outcome = await cluster.Completion.WaitAsync(TimeSpan.FromMinutes(3));

        Assert.Equal(RunStatus.Completed, outcome.Status);
        Assert.True(outcome.ReplicasConsistent);
        Assert.True(outcome.LastTest.Accuracy > 0.9);
    }
}
