//go:build ignore

// The root container in the cAdvisor types of Kubernetes before v1.37
// (github.com/google/cadvisor/info/v1 and info/v2, merged into lib/model in
// v1.37). hack/build-kube.sh copies this file or cadvisor_model.go beside
// main.go, whichever the version's kubelet uses.
package main

import (
	cadvisorapi "github.com/google/cadvisor/info/v1"
	cadvisorapiv2 "github.com/google/cadvisor/info/v2"
)

func (c *rootCadvisor) ContainerInfoV2(name string, _ cadvisorapiv2.RequestOptions) (map[string]cadvisorapiv2.ContainerInfo, error) {
	if name != "/" {
		return map[string]cadvisorapiv2.ContainerInfo{}, nil
	}
	now, cpu, cpuRate, rss := c.rootSample()
	return map[string]cadvisorapiv2.ContainerInfo{"/": {
		Spec: cadvisorapiv2.ContainerSpec{CreationTime: c.start, HasCpu: true, HasMemory: true,
			Memory: cadvisorapiv2.MemorySpec{Limit: rootMemoryLimit}},
		Stats: []*cadvisorapiv2.ContainerStats{{
			Timestamp: now,
			Cpu:       &cadvisorapi.CpuStats{Usage: cadvisorapi.CpuUsage{Total: cpu}},
			CpuInst:   &cadvisorapiv2.CpuInstStats{Usage: cadvisorapiv2.CpuInstUsage{Total: cpuRate}},
			Memory:    &cadvisorapi.MemoryStats{Usage: rss, WorkingSet: rss, RSS: rss},
		}},
	}}, nil
}
